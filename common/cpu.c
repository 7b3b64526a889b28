/* common/cpu.c — the CPU count the compute commands default to. sysconf(_SC_NPROCESSORS_ONLN)
 * counts the machine's CPUs, not the ones a batch scheduler or container gave us: on a node
 * shared through SLURM or cgroups it would start more threads than there are cores to run them. */
#include "common/cpu.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int mp_cpu_quota_parse(const char *line)
{
    char q[32];
    long period;
    if (sscanf(line, "%31s %ld", q, &period) != 2 || period <= 0) return -1;
    if (!strcmp(q, "max")) return 0;
    char *end;
    long quota = strtol(q, &end, 10);
    if (*end || quota <= 0) return -1;
    long n = (quota + period - 1) / period;
    return n > 1 << 20 ? 1 << 20 : (int)n;
}

/* the quota of this process's own cgroup (the "0::/path" line of /proc/self/cgroup) */
static int cgroup_quota(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[4096], path[4200] = "";
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", strcmp(line + 3, "/") ? line + 3 : "");
        }
    fclose(f);
    if (!*path || !(f = fopen(path, "r"))) return 0;
    int n = fgets(line, sizeof line, f) ? mp_cpu_quota_parse(line) : 0;
    fclose(f);
    return n > 0 ? n : 0;
}

int mp_cpu_count(void)
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) { /* more CPUs than a cpu_set_t holds, or no affinity call: the online count */
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    int q = cgroup_quota();
    if (q > 0 && q < n) n = q;
    return n;
}
