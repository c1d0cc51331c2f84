//! The sandbox's few raw system calls.

use std::io;

/// `prctl(PR_SET_NO_NEW_PRIVS, 1)`: no exec of this process or its children can gain privileges.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only; PR_SET_NO_NEW_PRIVS touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's Landlock ABI version (`landlock_create_ruleset(NULL, 0, VERSION)`), 0 without Landlock.
pub fn landlock_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a NULL attribute pointer, size 0 and the VERSION flag the call reads no memory and
    // only returns a number.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        0
    } else {
        r as i32
    }
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNS)` (or `CLONE_NEWNS` alone when `user` is false): the calling
/// (single-threaded) process detaches into a new user namespace and a new mount namespace.
pub fn unshare_user_mount(user: bool) -> io::Result<()> {
    use rustix::thread::UnshareFlags;
    let mut flags = UnshareFlags::NEWNS;
    if user {
        flags |= UnshareFlags::NEWUSER;
    }
    // SAFETY: `unshare_unsafe` is unsafe only because of `CLONE_FILES` (a thread could then hold file
    // descriptors of another table); we pass only NEWUSER and NEWNS, which leave the descriptor table
    // alone, and the caller checked that this process has a single thread.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}
