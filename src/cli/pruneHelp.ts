import { CRITERIA } from "../criteria/index.ts";
import { RECONSTRUCTORS } from "../reconstruct/index.ts";

export const PRUNE_HELP = `
Criteria:        ${Object.keys(CRITERIA).join(", ")}
Reconstruction:  ${Object.keys(RECONSTRUCTORS).join(", ")}
Allocation:      uniform (same fraction per layer), global (FLAP's standardized scores)
Calibration:     sequential (default: each layer sees the pruned outputs of the previous ones), dense`;
