/* fault.h - allocation fault injection for test builds (meson -Dfault_injection=true).
 *
 * Every place where thrasks' C code allocates memory or creates an object is marked with
 * FAULT_C() (a C allocation: on injection behave as if it returned NULL / ENOMEM) or FAULT_PY()
 * (a Python object creation: on injection set MemoryError and behave as if the call returned
 * NULL). Armed with _core._fault_arm(k), the k-th site reached from then on, in any thread,
 * fails once; tests sweep k over every site a scenario reaches (tests/test_faults.py).
 * In normal builds both macros are the constant 0 and cost nothing.
 */
#ifndef THRASKS_FAULT_H
#define THRASKS_FAULT_H

#ifdef THRASKS_FAULT_INJECTION
/* 1 if this site must fail now (the armed countdown reached it), else 0. Any thread. */
int fault_fire(void);
/* Arm: the k-th site from now fails (k <= 0 disarms). Resets the counters. */
void fault_arm(long k);
/* Sites passed since the last fault_arm, and whether the armed fault fired. */
long fault_sites_passed(void);
int fault_fired(void);
#define FAULT_C() fault_fire()
/* A fresh MemoryError: PyErr_NoMemory() may raise CPython's preallocated last-resort instance,
 * whose traceback then grows with every raise and keeps the frames (and what they hold) alive. */
#define FAULT_PY() (fault_fire() ? (PyErr_SetNone(PyExc_MemoryError), 1) : 0)
#else
#define FAULT_C() 0
#define FAULT_PY() 0
#endif

#endif
