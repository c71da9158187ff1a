/* chat.c: libFuzzer target: OpenAI message JSON (al_chat_parse_json) rendered by every built-in chat
 * template (common/text/chat*.c), with and without the generation prompt. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/text/chat.h"
#include "fuzz/fuzz_util.h"

static const al_chat_tool fuzz_tools[] = {
    {"get_weather", "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
                    "\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}"},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_chat *c = NULL;
    if (al_chat_parse_json((const char *)data, size, &c) != AL_OK)
        return 0;
    for (int f = AL_CHAT_RAW; f <= AL_CHAT_CHATML; f++) {
        for (int gen = 0; gen < 2; gen++) {
            al_chat_opts o = {.date = "April 16, 2025", .tools = gen ? fuzz_tools : NULL, .n_tools = gen};
            char *text = NULL;
            if (al_chat_render_ex((al_chat_format)f, c->msgs, c->n_msgs, c->docs, c->n_docs, gen, &o, &text) == AL_OK)
                free(text);
        }
    }
    al_chat_free(c);
    return 0;
}
