import { createContext } from 'svelte';
import type { ApiClient } from './client';

const [getApi, setApi] = createContext<ApiClient>();

/** Makes `api` the client of every component below the caller: App.svelte does this once. */
export function provideApi(api: ApiClient): ApiClient {
  return setApi(api);
}

/** The workstation's API client, from App.svelte; call it while a component initialises. */
export function useApi(): ApiClient {
  return getApi();
}
