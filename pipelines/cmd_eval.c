/* pipelines/cmd_eval.c — `magpie eval` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_eval(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("eval: not available in this build yet");
    return MP_EXIT_FAIL;
}
