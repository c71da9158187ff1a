/* openai.c: libFuzzer target: the OpenAI chat / completions request parser (services/router/front/openai*.c)
 * and what the router does next with a parsed chat request: the prompt rendered with the request's
 * tools, the forced tool call's constraint and the tool-call reader. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/text/chat.h"
#include "fuzz/fuzz_util.h"
#include "services/router/front/openai.h"
#include "services/router/front/tools.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    FUZZ_QUIET_INIT();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    al_oai_request r;
    al_oai_limits lim = {.max_body = 1 << 20};
    if (al_oai_parse_completion((const char *)data, size, &lim, &r) == AL_OK)
        al_oai_request_free(&r);
    if (al_oai_parse_chat((const char *)data, size, &lim, &r) != AL_OK)
        return 0;
    /* the router's template is fixed per deployment: pick one from the input */
    al_chat_format f = (al_chat_format)(size % 4);
    al_chat_opts o = {.date = "April 16, 2025", .tools = r.tools.defs, .n_tools = r.tools.n};
    char *text = NULL;
    if (al_chat_render_ex(f, r.chat->msgs, r.chat->n_msgs, r.chat->docs, r.chat->n_docs, 1, &o, &text) == AL_OK) {
        free(text);
        if (al_oai_tools_constraint(&r, f) == AL_OK && al_oai_tools_active(&r)) {
            al_chat_parsed p;
            const char *out = r.chat->n_msgs ? r.chat->msgs[r.chat->n_msgs - 1].content : "";
            if (al_oai_tools_parse_output(&r, f, out ? out : "", &p) == AL_OK)
                al_chat_parsed_free(&p);
        }
    }
    al_oai_request_free(&r);
    return 0;
}
