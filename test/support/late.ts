/**
 * A stand-in for a value that exists only once a beforeAll ran (test files are collected before
 * any hook runs): every property access goes to the current value. Methods are bound to it.
 */
export function late<T extends object>(what: string, current: () => T | undefined): T {
  const target = (): T => {
    const value = current();
    if (value === undefined) throw new Error(`${what} is not running here (used outside the tests of the block that set it up?)`);
    return value;
  };
  return new Proxy({} as T, {
    get(_, prop) {
      const value: unknown = Reflect.get(target(), prop);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target()) : value;
    },
    set: (_, prop, value) => Reflect.set(target(), prop, value),
    has: (_, prop) => Reflect.has(target(), prop),
    ownKeys: () => Reflect.ownKeys(target()),
    getOwnPropertyDescriptor: (_, prop) => {
      const d = Reflect.getOwnPropertyDescriptor(target(), prop);
      // A proxy may not report a non-configurable property its (empty) target lacks.
      return d && { ...d, configurable: true };
    },
  });
}
