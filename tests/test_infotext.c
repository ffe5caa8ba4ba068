/* test_infotext.c: api/infotext.c against A1111's create_infotext rules (modules/
 * processing.py): "<prompt>\nNegative prompt: <neg>\n<k: v, ...>" with the negative line
 * only when non-empty, values quoted with json.dumps when they hold ',', ':' or a newline,
 * and the whole text strip()ped. Expected strings are written out from those rules. */
#include "check.h"
#include "infotext.h"

static void expect(const sd_request *rq, int w, int h, const char *model, const char *want) {
  char *s = api_infotext(rq, w, h, model);
  CHECK_STR(s, want);
  free(s);
}

int main(void) {
  sd_request rq;
  sd_request_init(&rq);
  rq.prompt = "a red circle";
  rq.seed = 42;
  rq.steps = 4;
  rq.sampler = "ddim";
  expect(&rq, 64, 64, "tiny-sd",
         "a red circle\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size: 64x64, "
         "Model: tiny-sd");
  /* negative line; Euler a label; integral cfg written without ".0"; uint64 seed */
  rq.negative_prompt = "blurry, low quality";
  rq.sampler = "euler_a";
  rq.cfg_scale = 5.0f;
  rq.seed = UINT64_MAX;
  expect(&rq, 128, 96, "m",
         "a red circle\nNegative prompt: blurry, low quality\nSteps: 4, Sampler: Euler a, "
         "CFG scale: 5, Seed: 18446744073709551615, Size: 128x96, Model: m");
  /* shortest exact float forms */
  rq.negative_prompt = "";
  rq.cfg_scale = 0.1f;
  rq.seed = 0;
  rq.sampler = "pndm";
  expect(&rq, 8, 16, NULL,
         "a red circle\nSteps: 4, Sampler: PLMS, CFG scale: 0.1, Seed: 0, Size: 8x16");
  /* quote(): a model name with ',' ':' '"' or a newline is JSON-quoted */
  rq.cfg_scale = 7.25f;
  rq.sampler = "dpmpp_2m_karras";
  expect(&rq, 64, 64, "v1,5: \"x\"\n",
         "a red circle\nSteps: 4, Sampler: DPM++ 2M Karras, CFG scale: 7.25, Seed: 0, "
         "Size: 64x64, Model: \"v1,5: \\\"x\\\"\\n\"");
  /* empty prompt: strip() removes the leading newline; surrounding spaces go too */
  rq.prompt = "";
  rq.sampler = "heun";
  rq.cfg_scale = 7.5f;
  expect(&rq, 64, 64, "tiny-sd",
         "Steps: 4, Sampler: Heun, CFG scale: 7.5, Seed: 0, Size: 64x64, Model: tiny-sd");
  rq.prompt = "  cat ";
  expect(&rq, 64, 64, "t",
         "cat \nSteps: 4, Sampler: Heun, CFG scale: 7.5, Seed: 0, Size: 64x64, Model: t");
  /* a name without an A1111 label is shown as is */
  rq.prompt = "x";
  rq.sampler = "my_sampler";
  expect(&rq, 64, 64, "t",
         "x\nSteps: 4, Sampler: my_sampler, CFG scale: 7.5, Seed: 0, Size: 64x64, Model: t");
  /* image-to-image: the denoising strength follows the Model field */
  uint8_t px[3] = {0, 0, 0};
  rq.sampler = "ddim";
  rq.init_rgb = px;
  rq.strength = 0.6f;
  expect(&rq, 64, 64, "t",
         "x\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 0, Size: 64x64, Model: t, "
         "Denoising strength: 0.6");
  /* ControlNet units, after the other fields, quoted like any value with ',' or ':' */
  sd_control_unit u[2];
  sd_control_unit_init(&u[0]);
  sd_control_unit_init(&u[1]);
  u[0].scale = 0.8f;
  u[1].start = 0.25f;
  u[1].end = 0.5f;
  rq.control = u;
  rq.ncontrol = 2;
  rq.init_rgb = NULL;
  const char *names[] = {"canny-net", NULL};
  char *s = api_infotext_ex(&rq, 64, 64, "t", names);
  CHECK_STR(s, "x\nSteps: 4, Sampler: DDIM, CFG scale: 7.5, Seed: 0, Size: 64x64, Model: t, "
               "ControlNet 0: \"Module: none, Model: canny-net, Weight: 0.8, Guidance Start: 0, "
               "Guidance End: 1\", ControlNet 1: \"Module: none, Weight: 1, Guidance Start: "
               "0.25, Guidance End: 0.5\"");
  free(s);
  return check_exit();
}
