/* chat_tools.c: libFuzzer target: reading tool calls out of model output (al_chat_parse_tool_calls,
 * al_chat_tool_content_len in common/text/chat_tools.c) for every chat template. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/text/chat.h"
#include "fuzz/fuzz_util.h"

static const al_chat_tool fuzz_tools[] = {
    {"get_weather", "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}"},
    {"search", "{\"type\":\"function\",\"function\":{\"name\":\"search\"}}"},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    size_t len = strlen(text); /* model output is text: stop at a NUL like the router does */
    for (int f = AL_CHAT_RAW; f <= AL_CHAT_CHATML; f++) {
        al_chat_parsed p;
        if (al_chat_parse_tool_calls((al_chat_format)f, text, fuzz_tools, 2, &p) == AL_OK)
            al_chat_parsed_free(&p);
        /* streaming: every prefix's certain content never exceeds the prefix */
        size_t step = len / 8 + 1;
        for (size_t n = 0; n <= len; n += step)
            if (al_chat_tool_content_len((al_chat_format)f, text, n) > n)
                abort();
    }
    free(text);
    return 0;
}
