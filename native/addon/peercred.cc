// peerCred(fd): who is on the other end of a Unix stream socket, as the kernel recorded it at
// connect(2) time (socket(7), SO_PEERCRED). The daemon trusts this, never anything the client says.
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <string>

#include "addon.h"

Napi::Value PeerCred(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) {
        Napi::TypeError::New(env, "peerCred(fd): fd must be a number").ThrowAsJavaScriptException();
        return env.Undefined();
    }
    int fd = info[0].As<Napi::Number>().Int32Value();
    struct ucred cred;
    socklen_t len = sizeof cred;
    memset(&cred, 0, sizeof cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
        int e = errno;
        std::string msg =
            std::string("SO_PEERCRED on fd ") + std::to_string(fd) + ": " + strerror(e);
        Napi::Error err = Napi::Error::New(env, msg);
        err.Set("errno", Napi::Number::New(env, e));
        err.ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("pid", Napi::Number::New(env, cred.pid));
    out.Set("uid", Napi::Number::New(env, cred.uid));
    out.Set("gid", Napi::Number::New(env, cred.gid));
    return out;
}
