/* adapter_text.c: legacy aLoRA invocation strings -> tokens, and invocation reachability. */
#include "common/text/adapter_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

al_err al_adapter_resolve_invocation(al_adapter *a, const al_tokenizer *t)
{
    if (!a || !t)
        return ali_errf(AL_EINVAL, "adapter: resolve_invocation: bad arguments");
    if (a->invocation || !a->invocation_string)
        return AL_OK;
    int32_t *ids, n;
    al_err e = al_tokenizer_encode(t, a->invocation_string, strlen(a->invocation_string), 0, &ids,
                                   &n);
    if (e != AL_OK)
        return ali_errctx(e, "adapter '%s': invocation_string", a->name);
    if (n < 2) {
        free(ids);
        return ali_errf(AL_EFORMAT, "adapter '%s': invocation_string \"%s\" gives %d token(s); "
                        "none is left after dropping the first", a->name, a->invocation_string,
                        (int)n);
    }
    memmove(ids, ids + 1, (size_t)(n - 1) * sizeof *ids);
    a->invocation = ids;
    a->n_invocation = n - 1;
    char list[256];
    size_t k = 0;
    list[0] = 0;
    for (int32_t i = 0; i < a->n_invocation && k + 16 < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, i ? " %d" : "%d", a->invocation[i]);
    if (k + 16 >= sizeof list)
        snprintf(list + k, sizeof list - k, " ...");
    AL_WARN("adapter '%s': legacy invocation_string \"%s\" resolved to %d tokens [%s] (first "
            "token dropped); prefer alora_invocation_tokens", a->name, a->invocation_string,
            (int)a->n_invocation, list);
    return AL_OK;
}

int al_invocation_reachable(const al_tokenizer *t, const int32_t *inv, int n_inv,
                            const char *instruction_text)
{
    if (!t || !inv || n_inv <= 0 || !instruction_text)
        return 0;
    int32_t *ids, n;
    if (al_tokenizer_encode(t, instruction_text, strlen(instruction_text), 0, &ids, &n) != AL_OK)
        return 0;
    int found = 0;
    for (int32_t i = 0; !found && i + n_inv <= n; i++)
        found = !memcmp(ids + i, inv, (size_t)n_inv * sizeof *inv);
    free(ids);
    return found;
}
