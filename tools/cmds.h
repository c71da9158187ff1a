/* cmds.h: the alora CLI subcommands; each lives in tools/cmd_<name>.c. */
#ifndef AL_CMDS_H
#define AL_CMDS_H

/* Each returns the process exit code: 0 ok, 1 runtime error, 2 usage error. argv[0] is the
 * subcommand name. Errors are printed to stderr as "alora <cmd>: <message>". */
int cmd_generate(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_make_adapter(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_invoke(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_certs(int argc, char **argv);
int cmd_train(int argc, char **argv);

#endif
