# Declarations of ofd_lock.h: role locks on a ring segment's fd.
cdef extern from "ofd_lock.h" nogil:
    int ttq_ofd_trylock(int fd, long byte)
    int ttq_ofd_unlock(int fd, long byte)
    int ttq_ofd_is_held(int fd, long byte)
