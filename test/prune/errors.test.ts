/**
 * Bad settings fail before any work, with the right code: no output folder is created and nothing (no temporary
 * folder) is left in the output's parent. Through resolveRecipe / readRecipeFile / runPrune directly, and a few
 * through the CLI (`pare prune …`: error[E_…] and a hint on stderr, no stack trace). Also: a recipe file's values
 * are overridden by explicit settings, and --force replaces an existing output.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPrune } from "../../src/pipeline/prune.ts";
import { DEFAULTS, type Recipe, readRecipeFile, resolveRecipe } from "../../src/pipeline/recipe.ts";
import { parseSingleJson, runCli, snapshotDir } from "../helpers/cli.ts";
import { makeByteBpeTokenizerJson, makeTinyLlama, writeTinyModel } from "../helpers/tinyModels.ts";

const STORY = `Once upon a time there was a cat that sat on the mat. The cat was the best of cats, and the mat
was the worst of mats. It was the age of wisdom, it was the age of foolishness; the cat did not care.
`;

let root: string;
let model: string;
let story: string;
let short: string;
let work: string; // parent of the outputs in these tests

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "pare-errors-"));
  model = path.join(root, "llama");
  writeTinyModel(model, makeTinyLlama({ seed: 31 }), makeByteBpeTokenizerJson(300));
  story = path.join(root, "story.txt");
  short = path.join(root, "short.txt");
  fs.writeFileSync(story, STORY);
  fs.writeFileSync(short, "the cat sat");
  work = path.join(root, "work");
  fs.mkdirSync(work);
});

afterAll(() => {
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** the error's code (or "no code: <message>"), undefined if it did not throw */
async function codeOf(f: () => unknown): Promise<string | undefined> {
  try {
    await f();
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return err.code && /^E_/.test(err.code) ? err.code : `no code: ${err.message}`;
  }
  return undefined;
}

const base = (over: Partial<Recipe> = {}): Partial<Recipe> => ({
  model,
  out: path.join(work, "out"),
  calib: [story],
  samples: 4,
  seqLen: 16,
  batchSize: 2,
  ...over,
});

/** runs `f`, expects `code`, and that the output's parent (and the input) are untouched */
async function failsCleanly(code: string, f: () => unknown): Promise<void> {
  const before = snapshotDir(work);
  const input = snapshotDir(model);
  expect(await codeOf(f)).toBe(code);
  expect(snapshotDir(work)).toEqual(before);
  expect(snapshotDir(model)).toEqual(input);
}

describe("resolveRecipe refuses bad settings", () => {
  for (const ratio of [-0.1, 1, 1.5, "abc", Number.NaN] as unknown[]) {
    it(`ratio ${JSON.stringify(ratio)} → E_RATIO_INVALID`, async () => {
      await failsCleanly("E_RATIO_INVALID", () => resolveRecipe(base({ ratio: ratio as number })));
    });
  }

  it("a numeric string ratio is accepted ('0.25' → 0.25); ratio 0 is valid", () => {
    expect(resolveRecipe(base({ ratio: "0.25" as unknown as number })).ratio).toBe(0.25);
    expect(resolveRecipe(base({ ratio: 0 })).ratio).toBe(0);
  });

  // BUG (src/pipeline/recipe.ts, resolveRecipe: `r.ratio = Number(r.ratio)`): an empty or blank string
  // (`--ratio ""`) and null (a recipe file's `ratio:` without a value) become 0, so the run silently prunes
  // nothing instead of failing with E_RATIO_INVALID. (`ridge: ""` → 0 and `seed: ""` → 0 likewise.)
  it('ratio "" / " " / null → E_RATIO_INVALID', async () => {
    for (const ratio of ["", " ", null])
      expect(await codeOf(() => resolveRecipe(base({ ratio: ratio as unknown as number })))).toBe(
        "E_RATIO_INVALID",
      );
  });

  it("unknown criterion → E_CRITERION_UNKNOWN", async () => {
    // a typo is a type error for library users (hence the cast) and a coded error at run time
    await failsCleanly("E_CRITERION_UNKNOWN", () => resolveRecipe(base({ criterion: "flap-wif" as never })));
  });

  for (const [key, value] of [
    ["reconstruct", "lair"],
    ["allocation", "layerwise"],
    ["calibration", "streaming"],
  ] as const) {
    it(`unknown ${key} "${value}" → E_METHOD_UNKNOWN`, async () => {
      await failsCleanly("E_METHOD_UNKNOWN", () => resolveRecipe(base({ [key]: value } as Partial<Recipe>)));
    });
  }

  it("liar-seq with dense calibration → E_RECIPE_INVALID (and with sequential it is fine)", async () => {
    await failsCleanly("E_RECIPE_INVALID", () =>
      resolveRecipe(base({ reconstruct: "liar-seq", calibration: "dense" })),
    );
    expect(resolveRecipe(base({ reconstruct: "liar-seq", calibration: "sequential" })).reconstruct).toBe(
      "liar-seq",
    );
  });

  it("missing calibration for a criterion or a reconstruction that needs it → E_RECIPE_INVALID", async () => {
    await failsCleanly("E_RECIPE_INVALID", () =>
      resolveRecipe(base({ calib: [], criterion: "flap-wifv", reconstruct: "none" })),
    );
    await failsCleanly("E_RECIPE_INVALID", () =>
      resolveRecipe(base({ calib: [], criterion: "magnitude-l2", reconstruct: "bias" })),
    );
    // weights only: fine without
    expect(resolveRecipe(base({ calib: [], criterion: "magnitude-l1", reconstruct: "none" })).calib).toEqual(
      [],
    );
  });

  it("a calibration file that does not exist → E_IO", async () => {
    await failsCleanly("E_IO", () => resolveRecipe(base({ calib: [path.join(root, "nope.txt")] })));
  });

  it("integer settings out of range, negative ridge, unknown dtype → E_RECIPE_INVALID", async () => {
    for (const over of [
      { samples: 0 },
      { samples: 2.5 },
      { seqLen: 1 },
      { seed: -1 },
      { roundTo: 0 },
      { minGroups: 0 },
      { minChannels: "x" },
      { batchSize: 0 },
      { threads: 0 },
      { ridge: -0.01 },
      { ridge: Number.POSITIVE_INFINITY },
      { dtype: "F8" },
      { skipLayers: [-1] },
    ] as Partial<Recipe>[]) {
      expect(await codeOf(() => resolveRecipe(base(over))), JSON.stringify(over)).toBe("E_RECIPE_INVALID");
    }
  });

  it("--out equal to the input, inside it, or containing it → E_OUTPUT_INSIDE_INPUT", async () => {
    await failsCleanly("E_OUTPUT_INSIDE_INPUT", () => resolveRecipe(base({ out: model })));
    await failsCleanly("E_OUTPUT_INSIDE_INPUT", () => resolveRecipe(base({ out: `${model}/` })));
    await failsCleanly("E_OUTPUT_INSIDE_INPUT", () =>
      resolveRecipe(base({ out: path.join(model, "pruned") })),
    );
    await failsCleanly("E_OUTPUT_INSIDE_INPUT", () =>
      resolveRecipe(base({ out: path.join(model, "a", "b") })),
    );
    await failsCleanly("E_OUTPUT_INSIDE_INPUT", () => resolveRecipe(base({ out: root })));
    // through a symlink to the input folder
    const link = path.join(root, "link-to-llama");
    fs.symlinkSync(model, link);
    await failsCleanly("E_OUTPUT_INSIDE_INPUT", () =>
      resolveRecipe(base({ out: path.join(link, "pruned") })),
    );
    // a sibling whose name starts like the input's is fine
    expect(resolveRecipe(base({ out: `${model}-pruned` })).out).toBe(`${model}-pruned`);
  });

  it("defaults: the documented ones, and every field is present after resolving", () => {
    const r = resolveRecipe(base());
    expect(DEFAULTS).toMatchObject({
      ratio: 0.3,
      criterion: "obs",
      allocation: "global",
      obsNormalization: "auto",
      reconstruct: "liar",
      calibration: "sequential",
      ridge: "auto",
    });
    for (const k of Object.keys(DEFAULTS)) expect(r[k as keyof Recipe], k).toBeDefined();
  });
});

describe("recipe files", () => {
  it("an unknown key → E_RECIPE_INVALID (kebab-case and snake_case keys are accepted)", async () => {
    const f = path.join(root, "bad.yaml");
    fs.writeFileSync(f, "ratio: 0.2\nratoi: 0.3\n");
    expect(await codeOf(() => readRecipeFile(f))).toBe("E_RECIPE_INVALID");
    const g = path.join(root, "good.yaml");
    fs.writeFileSync(g, "seq-len: 32\nmin_channels: 2\ncalib: story.txt\nskip-layers: [1]\n");
    expect(readRecipeFile(g)).toEqual({ seqLen: 32, minChannels: 2, calib: ["story.txt"], skipLayers: [1] });
  });

  it("not YAML / not a mapping → E_RECIPE_INVALID; missing file → E_IO", async () => {
    const f = path.join(root, "broken.yaml");
    fs.writeFileSync(f, "ratio: [0.2\n");
    expect(await codeOf(() => readRecipeFile(f))).toBe("E_RECIPE_INVALID");
    fs.writeFileSync(f, "- 1\n- 2\n");
    expect(await codeOf(() => readRecipeFile(f))).toBe("E_RECIPE_INVALID");
    expect(await codeOf(() => readRecipeFile(path.join(root, "missing.yaml")))).toBe("E_IO");
  });

  it("explicit settings override the file's values, the file overrides the defaults", () => {
    const f = path.join(root, "recipe.yaml");
    fs.writeFileSync(
      f,
      `ratio: 0.5\ncriterion: wanda-sp\nallocation: global\nreconstruct: bias\nsamples: 7\ncalib: ${story}\n`,
    );
    const r = resolveRecipe({
      ...readRecipeFile(f),
      model,
      out: path.join(work, "x"),
      ratio: 0.2,
      allocation: "uniform",
    });
    expect(r.ratio).toBe(0.2);
    expect(r.allocation).toBe("uniform");
    expect(r.criterion).toBe("wanda-sp");
    expect(r.reconstruct).toBe("bias");
    expect(r.samples).toBe(7);
    expect(r.calib).toEqual([story]);
    expect(r.seqLen).toBe(DEFAULTS.seqLen);
  });

  it("skip-layers in a recipe file: a scalar or a comma list is read as a list; anything else is a coded error", async () => {
    const f = path.join(root, "skip.yaml");
    fs.writeFileSync(f, "skip-layers: 1\n");
    expect(
      resolveRecipe({ ...readRecipeFile(f), model, out: path.join(work, "y"), calib: [story] }).skipLayers,
    ).toEqual([1]);
    fs.writeFileSync(f, 'skip-layers: "0,1"\n');
    expect(
      resolveRecipe({ ...readRecipeFile(f), model, out: path.join(work, "y"), calib: [story] }).skipLayers,
    ).toEqual([0, 1]);
    fs.writeFileSync(f, "skip-layers: {a: 1}\n");
    const c = await codeOf(() =>
      resolveRecipe({ ...readRecipeFile(f), model, out: path.join(work, "y"), calib: [story] }),
    );
    expect(c).toBe("E_RECIPE_INVALID");
  });
});

describe("runPrune fails before any work", () => {
  it("calibration text shorter than one window → E_DATA_TOO_SHORT", async () => {
    await failsCleanly("E_DATA_TOO_SHORT", () =>
      runPrune(resolveRecipe(base({ calib: [short], seqLen: 32 }))),
    );
  });

  it("a ratio that would empty a layer (uniform: round(0.8·2 KV groups) = 2) → E_LAYER_EMPTIED", async () => {
    await failsCleanly("E_LAYER_EMPTIED", () =>
      runPrune(resolveRecipe(base({ ratio: 0.8, allocation: "uniform" }))),
    );
    // global: at most (2−1)·1536 + (48−1)·96 per layer = 78.75% can go
    await failsCleanly("E_LAYER_EMPTIED", () =>
      runPrune(resolveRecipe(base({ ratio: 0.8, allocation: "global" }))),
    );
    // minimum channels make it stricter
    await failsCleanly("E_LAYER_EMPTIED", () =>
      runPrune(resolveRecipe(base({ ratio: 0.3, allocation: "uniform", minChannels: 40 }))),
    );
  });

  it("--skip-layers beyond the model's layers → E_RECIPE_INVALID", async () => {
    await failsCleanly("E_RECIPE_INVALID", () => runPrune(resolveRecipe(base({ skipLayers: [2] }))));
  });

  it("an existing output folder without force → E_OUTPUT_EXISTS; with force it is replaced", async () => {
    const out = path.join(work, "existing");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "marker.txt"), "old");
    await failsCleanly("E_OUTPUT_EXISTS", () => resolveRecipe(base({ out })));
    const r = await runPrune(
      resolveRecipe(base({ out, force: true, criterion: "magnitude-l2", reconstruct: "none", ratio: 0.2 })),
    );
    expect(fs.existsSync(path.join(out, "marker.txt"))).toBe(false);
    expect(fs.readdirSync(out).sort()).toEqual([
      "config.json",
      "model.safetensors",
      "pare-pruning.json",
      "tokenizer.json",
      "tokenizer_config.json",
    ]);
    expect(r.output).toBe(path.resolve(out));
    // nothing else left next to it (no temporary or ".old" folder)
    expect(fs.readdirSync(work).filter((f) => f.includes("existing"))).toEqual(["existing"]);
    fs.rmSync(out, { recursive: true });
  });
});

describe("through the CLI", () => {
  const noStack = (stderr: string) => expect(stderr).not.toMatch(/^\s+at .+:\d+/m);

  it("coded errors with a hint and no stack trace; no output folder is created", async () => {
    const out = path.join(work, "cli-out");
    const before = snapshotDir(work);
    const runs = await Promise.all([
      runCli(["prune", model, "--out", out, "--ratio", "1", "--calib", story]),
      runCli(["prune", model, "--out", out, "--criterion", "nope", "--calib", story]),
      runCli([
        "prune",
        model,
        "--out",
        path.join(model, "sub"),
        "--criterion",
        "magnitude-l2",
        "--reconstruct",
        "none",
      ]),
      runCli(["prune", model, "--out", out, "--calib", short, "--seq-len", "32", "--samples", "2", "--json"]),
    ]);
    const codes = ["E_RATIO_INVALID", "E_CRITERION_UNKNOWN", "E_OUTPUT_INSIDE_INPUT", "E_DATA_TOO_SHORT"];
    runs.forEach((r, k) => {
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(`error[${codes[k]}]`);
      expect(r.stderr).toMatch(/\n\s*hint: \S/);
      noStack(r.stderr);
    });
    // --json: the error as one JSON object on stdout
    const j = parseSingleJson(runs[3].stdout) as { error: { code: string; hint: string } };
    expect(j.error.code).toBe("E_DATA_TOO_SHORT");
    expect(j.error.hint.length).toBeGreaterThan(0);
    expect(snapshotDir(work)).toEqual(before);
    expect(fs.existsSync(path.join(model, "sub"))).toBe(false);
  });

  it("a recipe file's values are overridden by flags (pare prune --recipe … --ratio …)", async () => {
    const f = path.join(root, "cli-recipe.yaml");
    fs.writeFileSync(
      f,
      [
        "ratio: 0.5",
        "criterion: wanda-sp",
        "allocation: global",
        "reconstruct: bias",
        "calibration: dense",
        "samples: 3",
        "seq-len: 12",
        `calib: ${story}`,
      ].join("\n"),
    );
    const out = path.join(work, "cli-recipe-out");
    const r = await runCli([
      "prune",
      model,
      "--recipe",
      f,
      "--out",
      out,
      "--ratio",
      "0.2",
      "--allocation",
      "uniform",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rep = parseSingleJson(r.stdout) as {
      recipe: Recipe;
      requestedRatio: number;
      calibration: { sequences: number; tokens: number };
    };
    expect(rep.recipe.ratio).toBe(0.2);
    expect(rep.requestedRatio).toBe(0.2);
    expect(rep.recipe.allocation).toBe("uniform");
    expect(rep.recipe.criterion).toBe("wanda-sp");
    expect(rep.recipe.reconstruct).toBe("bias");
    expect(rep.recipe.calibration).toBe("dense");
    expect(rep.calibration).toMatchObject({ sequences: 3, tokens: 36 });
    expect(fs.existsSync(path.join(out, "pare-pruning.json"))).toBe(true);
    // an unknown key in the recipe file: a coded error from the CLI too
    fs.writeFileSync(f, "ratio: 0.2\nunknown-thing: 1\n");
    const bad = await runCli(["prune", model, "--recipe", f, "--out", path.join(work, "never")]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("error[E_RECIPE_INVALID]");
    noStack(bad.stderr);
    expect(fs.existsSync(path.join(work, "never"))).toBe(false);
  });
});
