/* model_config.c: libFuzzer target: a Hugging Face config.json (al_config_parse, common/model/model.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/model/model.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    al_model_config cfg;
    if (al_config_parse(text, "config.json", &cfg) == AL_OK) {
        /* a config that parses must describe a layout the loader can size */
        (void)al_weights_layout_bytes(&cfg);
    }
    free(text);
    return 0;
}
