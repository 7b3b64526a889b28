/* tests/fuzz/fuzz_manifest.c — libFuzzer target: `magpie run`'s CSV manifest (mf_load, libcsv
 * fed line by line) on arbitrary bytes. Slides named in it are resolved and opened the way a run
 * does (refused unless regular files, without blocking). On success every output name must be
 * one path component that cannot leave the run folder ("", ".", "..", a '/' or a control
 * character would), and no two slides may share one. */
#include <unistd.h>

#include "common/error.h"
#include "pipelines/manifest.h"
#include "tests/fuzz/fuzz.h"

static FILE *devnull;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    mf_list m;
    /* mf_load prints up to 50 problems through stdio: silence the stream, not fd 2, so a
     * sanitizer report (written straight to fd 2) still shows */
    FILE *keep = stderr;
    stderr = devnull;
    int rc = mf_load(path, &m);
    stderr = keep;
    fuzz_check_err(rc);
    if (rc == 0) {
        if (m.n < 1) abort();
        for (int i = 0; i < m.n; i++) {
            const mf_item *it = &m.items[i];
            const char *nm = it->name;
            if (!it->path || !it->given || !nm || !nm[0] || !strcmp(nm, ".") || !strcmp(nm, "..")) abort();
            for (const unsigned char *c = (const unsigned char *)nm; *c; c++)
                if (*c == '/' || *c < 0x20 || *c == 0x7f) abort();
            if (it->line < 2) abort(); /* a data row comes after the header */
            for (int j = 0; j < i; j++)
                if (!strcmp(nm, m.items[j].name)) abort();
        }
        mf_free(&m);
    }
    close(fd);
    return 0;
}
