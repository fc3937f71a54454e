// The WebAssembly JS API that Node provides. TypeScript declares it only in lib.dom, which this
// project does not load (main-process code must not see DOM types); these are the parts we use.
declare global {
  namespace WebAssembly {
    class Module {
      constructor(bytes: BufferSource);
      static exports(module: Module): Array<{ name: string; kind: string }>;
    }
    class Instance {
      constructor(module: Module, imports?: Record<string, Record<string, unknown>>);
      readonly exports: Record<string, unknown>;
    }
    class Memory {
      constructor(descriptor: { initial: number; maximum?: number; shared?: boolean });
      readonly buffer: ArrayBuffer;
      grow(delta: number): number;
    }
    function validate(bytes: BufferSource): boolean;
  }
}
export {};
