/* infotext.h: the A1111 "infotext" that describes how an image was made.
 *
 * AUTOMATIC1111's web UI stores it in the PNG `parameters` text chunk and returns it in its
 * API's `info`; many tools parse it back. Format (modules/processing.py create_infotext):
 *   <prompt>\nNegative prompt: <neg>\nSteps: 20, Sampler: Euler a, CFG scale: 7.5,
 *   Seed: 42, Size: 512x512, Model: <name>
 * with the negative line omitted when the negative prompt is empty. Formatting only.
 */
#ifndef API_INFOTEXT_H
#define API_INFOTEXT_H

#include "sd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Build the infotext for a request that produced a width x height image with the model named
 * model_name (NULL = omit the Model field). The sampler is shown by its A1111 label
 * (sd_sampler_label), or its own name when it has none. Values containing ',', ':' or a
 * newline are JSON-quoted as A1111's quote() does. The CFG scale is written in its shortest
 * exact form ("7.5", "7"). With an init image (rq->init_rgb), ", Denoising strength: X"
 * follows the Model field, as in A1111's img2img. Returns a malloc'ed string (caller frees)
 * or NULL when out of memory. */
/* The name A1111 shows for a model path: its last component without trailing slashes or a
 * ".safetensors" extension ("nets/canny.safetensors" -> "canny"). malloc'ed; NULL when out
 * of memory. */
char *api_model_label(const char *path);

char *api_infotext(const sd_request *rq, int width, int height, const char *model_name);

/* The same, plus one field per ControlNet unit of the request, written as A1111's ControlNet
 * extension writes it (the control image is given directly, so the module is "none"):
 *   ControlNet 0: "Module: none, Model: <name>, Weight: 0.8, Guidance Start: 0,
 *   Guidance End: 1"
 * control_names[i] names rq->control[i].net (NULL, or a NULL entry, omits the Model part). */
char *api_infotext_ex(const sd_request *rq, int width, int height, const char *model_name,
                      const char *const *control_names);

#ifdef __cplusplus
}
#endif
#endif
