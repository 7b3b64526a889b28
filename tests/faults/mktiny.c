/* tests/faults/mktiny.c — mktiny DB: the trainer tests' tiny labelled dataset (tests/trainer/
 * tiny.h: 10 slides × 12 patches, 3 classes, 32 px at 10x) for the fault tests in shell. */
#include <stdio.h>

#include "common/error.h"
#include "tests/trainer/tiny.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mktiny DB\n");
        return 1;
    }
    tiny_cfg c = {.slides = 10, .per_slide = 12, .classes = 3, .hi = 32, .lo = 4, .png = 0, .seed = 3};
    if (tiny_make(argv[1], &c) != 0) {
        fprintf(stderr, "mktiny: %s\n", mp_err());
        return 2;
    }
    return 0;
}
