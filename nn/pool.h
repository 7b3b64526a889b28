/* nn/pool.h — a small persistent worker pool for the batch split of nn/model.c.
 * Threads are created on first use and then sleep on a condition variable between calls:
 * threads created per call start on their parent's core and were often not migrated before
 * the step ended, so the two halves of a small batch ran one after the other. */
#ifndef MP_NN_POOL_H
#define MP_NN_POOL_H

#define NN_POOL_MAX 16 /* most shares per run (more are clamped) */

/* Runs fn(arg, k) once for each k = 0..n-1 and returns when all are done. The calling thread and
 * the pool's threads claim the k in order, so any of them may run any k (all of them, if the
 * others are slow to wake or could not be started): fn's state must belong to k, not to the
 * thread. One run at a time: concurrent callers wait for each other. fn must not call it. */
void nn_pool_run(int n, void (*fn)(void *arg, int k), void *arg);

#endif
