// The pages, in the order the navigation lists them; ``project``: a project key's session sees it too.
import { overview } from "./overview.js";
import { catalog } from "./catalog.js";
import { deployments } from "./deployments.js";
import { keys } from "./keys.js";
import { usage } from "./usage.js";
import { requests } from "./requests.js";
import { evals } from "./evals.js";
import { playground } from "./playground.js";

export const pages = [overview, catalog, deployments, keys, usage, requests, evals, playground];
