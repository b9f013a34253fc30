/* fault.c - the countdown behind FAULT_C()/FAULT_PY() (fault.h). Test builds only.
 *
 * Process-wide on purpose, like the allocation failures it imitates (_testcapi.set_nomemory):
 * a site in any thread may be the one that fails. Relaxed atomics: the counters only need to be
 * exact (each site decrements once); nothing else is published through them. */
#include "fault.h"

#ifdef THRASKS_FAULT_INJECTION
#include <stdatomic.h>

static _Atomic long countdown; /* > 0: that many sites until the failing one; 0: disarmed */
static _Atomic long passed;    /* sites reached since armed */
static atomic_int fired;       /* the armed fault has fired */

int fault_fire(void)
{
    /* relaxed: a statistic */
    atomic_fetch_add_explicit(&passed, 1, memory_order_relaxed);
    /* relaxed: the CAS below makes each decrement exact; nothing is published */
    long c = atomic_load_explicit(&countdown, memory_order_relaxed);
    while (c > 0) {
        if (atomic_compare_exchange_weak_explicit(&countdown, &c, c - 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            if (c == 1) {
                atomic_store_explicit(&fired, 1, memory_order_relaxed);
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

void fault_arm(long k)
{
    atomic_store_explicit(&passed, 0, memory_order_relaxed);
    atomic_store_explicit(&fired, 0, memory_order_relaxed);
    atomic_store_explicit(&countdown, k > 0 ? k : 0, memory_order_relaxed);
}

long fault_sites_passed(void)
{
    return atomic_load_explicit(&passed, memory_order_relaxed);
}

int fault_fired(void)
{
    return atomic_load_explicit(&fired, memory_order_relaxed);
}
#else
typedef int fault_c_is_empty_without_fault_injection; /* ISO C: a translation unit is not empty */
#endif
