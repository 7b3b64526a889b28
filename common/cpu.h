/* common/cpu.h — how many CPUs this process may use, the default for every --threads option.
 * No state kept, nothing allocated; callable from any thread. */
#ifndef MP_CPU_H
#define MP_CPU_H

/* CPUs in this process's affinity mask (sched_getaffinity: taskset, cpusets, SLURM's
 * --cpus-per-task binding), lowered to a cgroup v2 CPU quota (cpu.max) when one is set, as
 * container runtimes do with --cpus. At least 1. Not cached: a
 * caller that changes its affinity sees the new count. */
int mp_cpu_count(void);

/* A cgroup v2 cpu.max line ("max 100000", "150000 100000"): the quota rounded up to whole CPUs,
 * 0 for no limit, -1 when the line does not parse. */
int mp_cpu_quota_parse(const char *line);

#endif
