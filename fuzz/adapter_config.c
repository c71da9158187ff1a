/* adapter_config.c: libFuzzer target: a PEFT adapter_config.json (al_adapter_load, common/model/adapter.c)
 * next to a real adapter_model.safetensors from tests/fixtures/oracle/adapters (the first input
 * byte picks which one, with its base model's config.json). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/model/adapter.h"
#include "common/model/model.h"
#include "common/util.h"
#include "fuzz/fuzz_util.h"

#define FUZZ_N_ADAPTERS 4
static const struct {
    const char *adapter, *base;
} fuzz_fixtures[FUZZ_N_ADAPTERS] = {
    {"alora_mlp", "granite_f32"},
    {"alora_qkvo", "llama_f32"},
    {"alora_qv", "llama_bf16"},
    {"lora_plain", "llama_f32"},
};
static al_model_config fuzz_cfg[FUZZ_N_ADAPTERS];
static char fuzz_adir[FUZZ_N_ADAPTERS][256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    const char *src = getenv("ALORA_SOURCE_DIR") ? getenv("ALORA_SOURCE_DIR") : ALORA_SOURCE_DIR;
    for (int i = 0; i < FUZZ_N_ADAPTERS; i++) {
        char path[1024], *st = NULL;
        size_t n = 0;
        snprintf(path, sizeof path, "%s/tests/fixtures/oracle/%s", src, fuzz_fixtures[i].base);
        if (al_config_load(path, &fuzz_cfg[i]) != AL_OK) {
            fprintf(stderr, "fuzz: %s (set ALORA_SOURCE_DIR to the source tree)\n", al_errmsg());
            abort();
        }
        snprintf(path, sizeof path, "%s/tests/fixtures/oracle/adapters/%s/adapter_model.safetensors", src,
                 fuzz_fixtures[i].adapter);
        if (ali_read_file(path, 1 << 20, &st, &n) != AL_OK) {
            fprintf(stderr, "fuzz: %s\n", al_errmsg());
            abort();
        }
        char name[64], buf[512];
        snprintf(name, sizeof name, "%s", fuzz_fixtures[i].adapter);
        snprintf(fuzz_adir[i], sizeof fuzz_adir[i], "%s/%s", fuzz_dir(), name);
        if (mkdir(fuzz_adir[i], 0700) != 0)
            abort();
        snprintf(name, sizeof name, "%s/adapter_model.safetensors", fuzz_fixtures[i].adapter);
        fuzz_write(name, st, n, buf, sizeof buf);
        free(st);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int k = data[0] % FUZZ_N_ADAPTERS;
    char name[64], buf[512];
    snprintf(name, sizeof name, "%s/adapter_config.json", fuzz_fixtures[k].adapter);
    fuzz_write(name, data + 1, size - 1, buf, sizeof buf);
    al_adapter *a = NULL;
    if (al_adapter_load(fuzz_adir[k], &fuzz_cfg[k], &a) == AL_OK) {
        int32_t toks[] = {1, 7, 8, 9, 11, 12, 13, 14, 5, 6, 7};
        (void)al_adapter_activation_start(a, toks, (int32_t)(sizeof toks / sizeof *toks));
        al_adapter_free(a);
    }
    return 0;
}
