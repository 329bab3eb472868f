// Copies the pinned, self-contained Mermaid bundle into ../assets, where
// the Go binary embeds it: no CDN at run time.
import { copyFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "node_modules", "mermaid", "dist", "mermaid.min.js");
if (!existsSync(src)) {
  console.error("mermaid is not installed: run npm ci first");
  process.exit(1);
}
copyFileSync(src, join(here, "..", "assets", "mermaid.min.js"));
console.log("assets/mermaid.min.js updated from", src);
