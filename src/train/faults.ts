// Failures made on purpose, for the tests of recovery (never set in normal use): read from the environment here so
// that neither the CLI nor the loop knows about them. See ENV_VARS (util/env.ts) for the variables.

import { env } from "../util/env.js";
import type { TrainHooks } from "./loop.js";

/**
 * The hooks the GPT2_TEST_* variables ask for on this rank: a gradient spike or a skipped update at a step
 * (GPT2_TEST_SPIKE_STEP, GPT2_TEST_SKIP_STEP), and for data-parallel failures a rank that kills itself
 * (GPT2_TEST_DIE_AT=RANK:STEP, SIGKILL after that step) or stops answering (GPT2_TEST_HANG_AT=RANK:STEP: the others
 * must time out, not hang).
 */
export function testFaults(rank: number): Pick<TrainHooks, "spikeStep" | "skipStep" | "afterStep"> {
  const step = (k: "GPT2_TEST_SPIKE_STEP" | "GPT2_TEST_SKIP_STEP") => (env(k) ? Number(env(k)) : undefined);
  const at = (k: "GPT2_TEST_DIE_AT" | "GPT2_TEST_HANG_AT") => env(k)?.split(":").map(Number);
  const die = at("GPT2_TEST_DIE_AT"), hang = at("GPT2_TEST_HANG_AT");
  return {
    spikeStep: step("GPT2_TEST_SPIKE_STEP"), skipStep: step("GPT2_TEST_SKIP_STEP"),
    afterStep: !die && !hang ? undefined : (s) => {
      if (die && die[0] === rank && die[1] === s) process.kill(process.pid, "SIGKILL");
      if (hang && hang[0] === rank && hang[1] === s) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3_600_000);
    },
  };
}
