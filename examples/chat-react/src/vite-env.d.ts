/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The backend's URL; unset or empty means the origin that served the page. */
  readonly VITE_CONVEX_URL?: string;
}

interface ImportMeta {
  readonly env: ImportMetaEnv;
}
