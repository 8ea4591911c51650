// checkDir(opts): ../common/safedir.c (shared with latchkey-rootd) for the daemon's start-up
// checks (the homes base, the socket dir). Synchronous: it runs once at start and on reload,
// before anything is served.
#include <unistd.h>

#include <string>

#include "addon.h"
#include "safedir.h"

namespace
{

bool OptString(const Napi::Object &o, const char *key, std::string *out)
{
    Napi::Value v = o.Get(key);
    if (!v.IsString())
        return false;
    *out = v.As<Napi::String>().Utf8Value();
    // An embedded NUL would make C check a shorter path than the caller meant.
    return out->find('\0') == std::string::npos;
}

} // namespace

Napi::Value CheckDir(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    std::string path, what, parent_of;
    Napi::Object o;
    bool ok = info.Length() >= 1 && info[0].IsObject();
    if (ok) {
        o = info[0].As<Napi::Object>();
        ok = OptString(o, "path", &path) && OptString(o, "what", &what) &&
             OptString(o, "parentOf", &parent_of) && o.Get("create").IsBoolean() &&
             o.Get("rootOnly").IsBoolean() && o.Get("mode").IsNumber();
    }
    double mode = ok ? o.Get("mode").As<Napi::Number>().DoubleValue() : -1;
    if (!ok || !(mode >= 0 && mode <= 07777) ||
        mode != static_cast<double>(static_cast<int>(mode))) {
        Napi::TypeError::New(env, "checkDir(opts): need path, what, parentOf (strings), create, "
                                  "rootOnly (booleans) and mode (0..07777)")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    struct safe_dir_request req = {};
    req.path = path.c_str();
    req.trusted_uid =
        o.Get("rootOnly").As<Napi::Boolean>().Value() ? static_cast<uid_t>(-1) : geteuid();
    req.create = o.Get("create").As<Napi::Boolean>().Value() ? 1 : 0;
    req.mode = static_cast<mode_t>(mode);
    req.what = what.c_str();
    req.parent_of = parent_of.c_str();
    char why[2048];
    int missing = 0;
    int fd = safe_dir_open(&req, why, sizeof why, &missing);
    if (fd >= 0)
        close(fd);
    Napi::Object out = Napi::Object::New(env);
    out.Set("ok", Napi::Boolean::New(env, fd >= 0));
    out.Set("missing", Napi::Boolean::New(env, fd < 0 && missing != 0));
    out.Set("problem", fd >= 0 ? env.Null() : Napi::String::New(env, why));
    return out;
}
