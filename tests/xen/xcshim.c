/*
 * xcshim: answers the few libxenctrl calls `xl create -n` (dry run) makes, so Xen's own
 * xl and libxl can parse an xl.cfg on a machine without a hypervisor.
 *
 * Built by tests/xen/conftest.py (`cc -shared -fPIC`) into a temp dir and loaded with
 * LD_PRELOAD into /usr/lib/xen-4.17/bin/xl (Debian xen-utils-4.17). Our definitions come
 * first in symbol lookup, so libxenlight's calls to these functions land here instead of
 * in libxenctrl, whose real versions issue hypercalls through /dev/xen/privcmd (absent
 * here: "cannot open libxc handle").
 *
 * What `xl create -n` needs (found by running it and reading libxl 4.17):
 *   libxl_ctx_alloc        -> xc_interface_open: any non-NULL handle; nothing dereferences
 *                             it except the libxenctrl functions faked below.
 *                             (It also opens xenstore with xs_open(0): that one is real,
 *                             the test points XENSTORED_PATH at the project's simulated
 *                             xenstored.)
 *   libxl_ctx_free         -> xc_interface_close.
 *   libxl_get_version_info -> xc_version for XENVER_version, extraversion, compile_info,
 *                             capabilities, changeset, platform_parameters, pagesize,
 *                             commandline, build_id: a Xen 4.17 x86_64 host.
 *   libxl_get_physinfo     -> xc_physinfo (xl reads it to pick defaults, e.g. whether the
 *                             host can do HVM and IOMMU passthrough), and
 *                             xc_sharing_freed_pages / xc_sharing_used_frames (ENOSYS:
 *                             "no memory sharing", which libxl turns into 0).
 * The host it describes: 2 CPUs, 1 NUMA node, 4 GiB of RAM, with every capability bit of
 * 4.17 set (hvm, pv, hvm_directio, hap, shadow, iommu_hap_pt_share, ...), so no guest
 * type or passthrough mode is refused for want of hardware.
 *
 * Any other libxenctrl call would run the real function on our fake handle and crash:
 * the SIGSEGV handler then prints a backtrace naming the call and exits 99, so a test
 * that reaches an unfaked call says which one to add here. Set XCSHIM_TRACE=1 to log every
 * faked call on stderr.
 *
 * The structures are declared here (Debian ships no libxen-dev headers on the test
 * machines); their layout is that of Xen 4.17's public headers
 * (xen/include/public/version.h, sysctl.h), checked against libxl_get_physinfo's
 * disassembly: physinfo's capabilities at byte 28, total_pages at 40, hw_cap at 80.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct xc_interface_core xc_interface;

static char fake_handle[64];
static int trace;

static void note(const char *call, int arg)
{
    if (trace)
        fprintf(stderr, "xcshim: %s %d\n", call, arg);
}

static void on_segv(int sig)
{
    static const char msg[] =
        "xcshim: crashed, most likely in a libxenctrl call the shim does not fake "
        "(see tests/xen/xcshim.c); backtrace:\n";
    void *frames[48];
    int n = backtrace(frames, 48);
    (void)sig;
    if (write(2, msg, sizeof msg - 1) < 0)
        _exit(99);
    backtrace_symbols_fd(frames, n, 2);
    _exit(99);
}

__attribute__((constructor)) static void xcshim_init(void)
{
    const char *t = getenv("XCSHIM_TRACE");
    trace = t != NULL && *t != '\0' && *t != '0';
    signal(SIGSEGV, on_segv);
}

xc_interface *xc_interface_open(void *logger, void *dombuild_logger, unsigned open_flags)
{
    (void)logger; (void)dombuild_logger; (void)open_flags;
    note("xc_interface_open", 0);
    return (xc_interface *)fake_handle;
}

int xc_interface_close(xc_interface *xch)
{
    (void)xch;
    note("xc_interface_close", 0);
    return 0;
}

/* xen/include/public/version.h */
enum {
    XENVER_version = 0, XENVER_extraversion = 1, XENVER_compile_info = 2,
    XENVER_capabilities = 3, XENVER_changeset = 4, XENVER_platform_parameters = 5,
    XENVER_get_features = 6, XENVER_pagesize = 7, XENVER_guest_handle = 8,
    XENVER_commandline = 9, XENVER_build_id = 10,
};

struct compile_info {                     /* xen_compile_info_t */
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};

int xc_version(xc_interface *xch, int cmd, void *arg)
{
    (void)xch;
    note("xc_version", cmd);
    switch (cmd) {
    case XENVER_version:
        return (4 << 16) | 17;
    case XENVER_extraversion:             /* char[16] */
        strcpy(arg, ".0");
        return 0;
    case XENVER_compile_info: {
        struct compile_info *info = arg;
        memset(info, 0, sizeof *info);
        strcpy(info->compiler, "xcshim");
        strcpy(info->compile_by, "xcshim");
        strcpy(info->compile_domain, "test");
        strcpy(info->compile_date, "none");
        return 0;
    }
    case XENVER_capabilities:             /* char[1024] */
        strcpy(arg, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64");
        return 0;
    case XENVER_changeset:                /* char[64] */
        strcpy(arg, "xcshim");
        return 0;
    case XENVER_platform_parameters:      /* { xen_ulong_t virt_start; } */
        *(uint64_t *)arg = 0xffff800000000000ULL;
        return 0;
    case XENVER_pagesize:
        return 4096;
    case XENVER_commandline:              /* char[1024] */
        strcpy(arg, "");
        return 0;
    case XENVER_build_id:                 /* 0: no build id (libxl stores "") */
        return 0;
    }
    errno = ENOSYS;
    return -ENOSYS;
}

struct physinfo {                         /* xen_sysctl_physinfo_t, interface 0x15 */
    uint32_t threads_per_core;
    uint32_t cores_per_socket;
    uint32_t nr_cpus;
    uint32_t max_cpu_id;
    uint32_t nr_nodes;
    uint32_t max_node_id;
    uint32_t cpu_khz;
    uint32_t capabilities;                /* XEN_SYSCTL_PHYSCAP_* */
    uint32_t arch_capabilities;
    uint32_t pad;
    uint64_t total_pages;
    uint64_t free_pages;
    uint64_t scrub_pages;
    uint64_t outstanding_pages;
    uint64_t max_mfn;
    uint32_t hw_cap[8];
};

_Static_assert(sizeof(struct physinfo) == 112, "xen_sysctl_physinfo_t is 112 bytes in 4.17");

/* hvm pv directio hap shadow iommu_hap_pt_share vmtrace vpmu gnttab_v1 gnttab_v2 */
#define ALL_PHYSCAPS 0x3ffu
#define PAGES_4GIB (1ULL << 20)

int xc_physinfo(xc_interface *xch, struct physinfo *info)
{
    (void)xch;
    note("xc_physinfo", 0);
    memset(info, 0, sizeof *info);
    info->threads_per_core = 1;
    info->cores_per_socket = 2;
    info->nr_cpus = 2;
    info->max_cpu_id = 1;
    info->nr_nodes = 1;
    info->max_node_id = 0;
    info->cpu_khz = 2000000;
    info->capabilities = ALL_PHYSCAPS;
    info->total_pages = PAGES_4GIB;
    info->free_pages = PAGES_4GIB * 3 / 4;
    info->max_mfn = PAGES_4GIB;
    return 0;
}

long xc_sharing_freed_pages(xc_interface *xch)
{
    (void)xch;
    note("xc_sharing_freed_pages", 0);
    errno = ENOSYS;
    return -1;
}

long xc_sharing_used_frames(xc_interface *xch)
{
    (void)xch;
    note("xc_sharing_used_frames", 0);
    errno = ENOSYS;
    return -1;
}
