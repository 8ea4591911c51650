// sdNotify(socketPath, message): one datagram to systemd's notification socket (sd_notify(3)),
// which Node cannot send itself (no AF_UNIX datagram sockets). The daemon passes $NOTIFY_SOCKET:
// a path, or "@name" for the abstract namespace. The sender must be the main pid (the daemon is,
// NotifyAccess=main), so this is not left to a systemd-notify child process.
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stddef.h>
#include <unistd.h>

#include <string>

#include "addon.h"

Napi::Value SdNotify(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
        Napi::TypeError::New(env, "sdNotify(socketPath, message): two strings")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    std::string path = info[0].As<Napi::String>().Utf8Value();
    std::string msg = info[1].As<Napi::String>().Utf8Value();
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (path.empty() || (path[0] != '/' && path[0] != '@') || path.size() >= sizeof sa.sun_path) {
        Napi::Error::New(
            env,
            "NOTIFY_SOCKET is not an absolute path or @abstract name that fits a socket address")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    memcpy(sa.sun_path, path.data(), path.size());
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path.size());
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        Napi::Error::New(env, std::string("socket: ") + strerror(errno))
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    // Never blocks: a receiver that stopped reading (a hung PID 1, a socket nobody reads) must not
    // freeze the event loop; EAGAIN is a failed send like any other, which the caller logs once.
    ssize_t n = sendto(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                       (struct sockaddr *)&sa, len);
    int e = errno;
    close(fd);
    if (n < 0 || (size_t)n != msg.size()) {
        Napi::Error err = Napi::Error::New(env, std::string("sendto ") + path + ": " +
                                                    (n < 0 ? strerror(e) : "short write"));
        err.Set("errno", Napi::Number::New(env, n < 0 ? e : 0));
        err.ThrowAsJavaScriptException();
        return env.Undefined();
    }
    return Napi::Boolean::New(env, true);
}
