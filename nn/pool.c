/* nn/pool.c — see pool.h. One generation counter: a run bumps it and wakes every sleeping
 * thread; thread k works if k < the run's count, and the last one to finish signals the
 * caller. */
#include "nn/pool.h"

#include <pthread.h>
#include <stdint.h>


static pthread_mutex_t run_mu = PTHREAD_MUTEX_INITIALIZER; /* one run at a time */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_go = PTHREAD_COND_INITIALIZER, cv_done = PTHREAD_COND_INITIALIZER;
static unsigned gen, start_gen[NN_POOL_MAX];
static int nthreads, pending, job_n;
static void (*job_fn)(void *, int);
static void *job_arg;

static void *pool_main(void *p)
{
    int k = (int)(intptr_t)p;
    pthread_mutex_lock(&mu);
    unsigned seen = start_gen[k];
    for (;;) {
        while (gen == seen) pthread_cond_wait(&cv_go, &mu);
        seen = gen;
        if (k >= job_n) continue;
        void (*fn)(void *, int) = job_fn;
        void *arg = job_arg;
        pthread_mutex_unlock(&mu);
        fn(arg, k);
        pthread_mutex_lock(&mu);
        if (--pending == 0) pthread_cond_signal(&cv_done);
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
        if (rc) break;
        nthreads++;
    }
    int m = nthreads + 1 < n ? nthreads + 1 : n; /* shares the pool runs: 0..m-1 */
    job_fn = fn, job_arg = arg, job_n = m, pending = m - 1;
    gen++;
    pthread_cond_broadcast(&cv_go);
    pthread_mutex_unlock(&mu);
    fn(arg, 0);
    for (int k = m; k < n; k++) fn(arg, k); /* threads that could not start */
    pthread_mutex_lock(&mu);
    while (pending > 0) pthread_cond_wait(&cv_done, &mu);
    pthread_mutex_unlock(&mu);
    pthread_mutex_unlock(&run_mu);
}
