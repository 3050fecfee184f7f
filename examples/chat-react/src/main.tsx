import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ConvexProvider, ConvexReactClient } from "convex/react";
import App from "./App";
import "./index.css";

// `npm run dev` sets VITE_CONVEX_URL (.env.development) because Vite serves the page from its
// own port. A build has it unset, so the page talks to whatever origin served it: a backend
// that serves the built files needs no configuration.
const convex = new ConvexReactClient(
  import.meta.env.VITE_CONVEX_URL || window.location.origin,
);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <ConvexProvider client={convex}>
      <App />
    </ConvexProvider>
  </StrictMode>,
);
