/* pipelines/cmd_train.c — `magpie train` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("train: not available in this build yet");
    return MP_EXIT_FAIL;
}
