/* nn/pool.c — see pool.h. One generation counter: a run bumps it and wakes every sleeping
 * thread. Shares are claimed, not assigned: the caller and every awake pool thread take the next
 * unclaimed share until none is left, so a thread that wakes late (its CPU busy, a hypervisor
 * delay) costs only what it has claimed, never a wait for work it has not started. A share's
 * state belongs to the share (fn's k), not to the thread that runs it, so results do not depend
 * on which thread ran what. */
#include "nn/pool.h"

#include <pthread.h>
#include <stdint.h>


static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER; /* one run at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_go = PTHREAD_COND_INITIALIZER, cv_done = PTHREAD_COND_INITIALIZER;
static unsigned gen, start_gen[NN_POOL_MAX];
static int nthreads, job_n, job_next, job_done;
static void (*job_fn)(void *, int);
static void *job_arg;

/* Claims and runs shares of the current run until none is left; mu held on entry and exit. */
static void work(void)
{
    while (job_next < job_n) {
        int k = job_next++;
        void (*fn)(void *, int) = job_fn;
        void *arg = job_arg;
        pthread_mutex_unlock(&mu);
        fn(arg, k);
        pthread_mutex_lock(&mu);
        if (++job_done == job_n) pthread_cond_signal(&cv_done);
    }
}

static void *pool_main(void *p)
{
    int k = (int)(intptr_t)p;
    pthread_mutex_lock(&mu);
    unsigned seen = start_gen[k];
    for (;;) {
        while (gen == seen) pthread_cond_wait(&cv_go, &mu);
        seen = gen;
        work(); /* a run that is over (or taken by others) leaves nothing to claim */
    }
    return NULL;
}

void nn_pool_run(int n, void (*fn)(void *arg, int k), void *arg)
{
    if (n > NN_POOL_MAX) n = NN_POOL_MAX;
    if (n <= 1) {
        fn(arg, 0);
        return;
    }
    pthread_mutex_lock(&run_mu);
    pthread_mutex_lock(&mu);
    while (nthreads < n - 1) {
        int k = nthreads + 1;
        start_gen[k] = gen; /* the thread must see this run's bump as new */
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&th, &at, pool_main, (void *)(intptr_t)k);
        pthread_attr_destroy(&at);
        if (rc) break; /* fewer threads: the caller claims the rest */
        nthreads++;
    }
    job_fn = fn, job_arg = arg, job_n = n, job_next = 0, job_done = 0;
    gen++;
    pthread_cond_broadcast(&cv_go);
    work();
    while (job_done < job_n) pthread_cond_wait(&cv_done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&run_mu);
}
