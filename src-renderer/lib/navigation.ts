import { parseRoute, type Route } from './route';

// The one module that reads and moves the page's address; views ask it rather than `location`.

/** Where the page is now. */
export function currentRoute(): Route {
  return parseRoute(location.hash);
}

/** Goes to `hash` (a new history entry, so Back returns), e.g. `runRoute(12)`. */
export function navigate(hash: string): void {
  location.hash = hash;
}

/** Says in the address what is shown, without a history entry of its own (Back still leaves the view). */
export function replaceRoute(hash: string): void {
  if (location.hash !== hash) history.replaceState(history.state, '', hash);
}
