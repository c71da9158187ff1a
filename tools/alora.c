/* alora.c: the alora CLI entry point; dispatches to tools/cmd_<name>.c. */
#include <stdio.h>
#include <string.h>

#include "engine/engine.h"
#include "tools/cmds.h"

typedef struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} cli_cmd;

static const cli_cmd cli_cmds[] = {
    {"generate", cmd_generate, "run the single-process engine on a prompt (tokens or text)"},
    {"make-model", cmd_make_model, "write a random-weight model in the Hugging Face layout"},
    {"make-adapter", cmd_make_adapter, "write a random PEFT (a)LoRA adapter for a model"},
    {"tokenize", cmd_tokenize, "print the token ids and pieces of a text"},
    {"up", cmd_up, "start a local cluster (base, workers, router) from one config"},
    {"invoke", cmd_invoke, "call an intrinsic through the cluster's router"},
    {"status", cmd_status, "list the cluster's processes as the router sees them"},
    {"certs", cmd_certs, "make a CA and certificates for tls+tcp:// RPC (mutual TLS)"},
    {"train", cmd_train, "fine-tune an aLoRA (or plain LoRA) on jsonl data into a PEFT adapter"},
};

static void cli_usage(FILE *f)
{
    fprintf(f, "usage: alora <command> [options]   (alora <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        fprintf(f, "  %-14s %s\n", cli_cmds[i].name, cli_cmds[i].help);
}

/* alora --version: the release, the CPU kernels this machine runs and why, the CUDA plugin. */
static int cli_version(void)
{
    const al_ops *cuda = NULL;
    printf("alora %s\n", ALORA_VERSION);
    printf("cpu kernels: %s (%s; variants built: %s)\n", al_cpu_isa(), al_cpu_isa_reason(), al_cpu_isa_built());
    printf("cpu threads: %d\n", al_cpu_threads());
#ifdef ALORA_HAVE_CUDA
    cuda = al_ops_cuda();
    printf("cuda: %s\n", cuda ? "plugin loaded, device available" : "plugin built, no usable device");
#else
    printf("cuda: not built (no nvcc at build time)\n");
#endif
    (void)cuda;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version"))
        return cli_version();
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        cli_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cli_cmds / sizeof cli_cmds[0]; i++)
        if (!strcmp(argv[1], cli_cmds[i].name))
            return cli_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "alora: unknown command '%s'\n", argv[1]);
    cli_usage(stderr);
    return 2;
}
