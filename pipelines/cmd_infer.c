/* pipelines/cmd_infer.c — `magpie infer` (placeholder until the component lands). */
#include "common/error.h"
#include "common/log.h"
#include "pipelines/cmds.h"

int cmd_infer(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("infer: not available in this build yet");
    return MP_EXIT_FAIL;
}
