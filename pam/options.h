/* Module arguments of pam_latchkey.so (the words after the module path in /etc/pam.d/…). */
#ifndef LK_PAM_OPTIONS_H
#define LK_PAM_OPTIONS_H

#include <sys/types.h>
#include <security/pam_modules.h>

/* LocalEGA's prompt, kept so existing users see the same text: used when neither prompt= nor
 * the daemon's LOGIN_CHECK reply gives one. */
#define LK_PAM_DEFAULT_PROMPT "Please, enter your EGA password: "

struct lk_pam_opts {
    int debug;          /* debug: log each decision to syslog */
    int silent;         /* silent, or the PAM_SILENT flag: no messages to the user */
    int use_first_pass; /* only the password an earlier module stored (PAM_AUTHTOK) */
    int try_first_pass; /* that password first, then ask */
    int echo_pass;      /* ask with echo on (PAM_PROMPT_ECHO_ON) */
    int unknown_deny;   /* unknown=deny: users latchkey does not serve (local accounts too)
                           fail account and session instead of being ignored */
    int have_umask;     /* umask=OCTAL given: overrides the daemon's umask */
    mode_t umask;
    const char *prompt;       /* prompt=TEXT (the rest of the argument, spaces via [..] syntax),
                                 or NULL: the daemon's prompt */
    const char *socket_dir;   /* socket_dir=DIR, or NULL */
    const char *local_passwd; /* local_passwd=PATH, or NULL: /etc/passwd */
};

/* Fills opts from flags and argv. Unknown or malformed arguments are logged with pam_syslog
 * and skipped: a typo in a PAM file must not lock everybody out. */
void lk_pam_parse_opts(pam_handle_t *pamh, int flags, int argc, const char **argv,
                       struct lk_pam_opts *opts);

#endif /* LK_PAM_OPTIONS_H */
