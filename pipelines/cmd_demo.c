/* pipelines/cmd_demo.c — `magpie demo` (placeholder until the component lands). */
#include "pipelines/cmds.h"
#include "common/error.h"
#include "common/log.h"

int cmd_demo(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    mp_error("demo: not available in this build yet");
    return MP_EXIT_FAIL;
}
