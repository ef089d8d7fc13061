// DOM lookups that fail loudly: a missing element is a bug in index.html, not a runtime condition.

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`index.html has no #${id}`);
  return element as T;
}
