/* Open-file-description byte locks: who holds a ring's writer (or SPSC reader) role.
 *
 * OFD locks belong to the open file, not the process, so two handles in one process
 * conflict (as they must) and closing an unrelated fd does not drop them; the kernel
 * releases them when the holder dies, which makes them the liveness test for a writer.
 */
#ifndef TTQ_OFD_LOCK_H
#define TTQ_OFD_LOCK_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <string.h>

/* 0 on success, EAGAIN/EACCES when another open file holds it, other errno otherwise. */
static inline int ttq_ofd_trylock(int fd, long byte)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
}

static inline int ttq_ofd_unlock(int fd, long byte)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : errno;
}

/* 1 if some other open file holds the byte, 0 if free, -errno on error. Takes nothing. */
static inline int ttq_ofd_is_held(int fd, long byte)
{
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return -errno;
    return fl.l_type != F_UNLCK;
}

#endif
