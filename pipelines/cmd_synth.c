/* pipelines/cmd_synth.c — `magpie synth` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_synth(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("synth: not available in this build yet");
    return MP_EXIT_FAIL;
}
