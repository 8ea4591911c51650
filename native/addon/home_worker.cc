// createHome(opts): homes.c on the libuv threadpool. The work is a handful of syscalls, but on a
// slow or hung filesystem (NFS base) they must not stall the event loop.
#include <string>
#include <vector>

#include "addon.h"
#include "homes.h"

namespace
{

class HomeWorker : public Napi::AsyncWorker
{
  public:
    HomeWorker(Napi::Env env, std::string base, std::string name, std::string upload_dir, uid_t uid,
               gid_t gid, enum home_layout layout, mode_t mode)
        : Napi::AsyncWorker(env, "latchkey.createHome"),
          deferred_(Napi::Promise::Deferred::New(env)), base_(std::move(base)),
          name_(std::move(name)), upload_dir_(std::move(upload_dir))
    {
        req_.uid = uid;
        req_.gid = gid;
        req_.layout = layout;
        req_.mode = mode;
    }

    Napi::Promise Promise()
    {
        return deferred_.Promise();
    }

  protected:
    void Execute() override
    {
        req_.base = base_.c_str();
        req_.name = name_.c_str();
        req_.upload_dir = upload_dir_.c_str();
        home_ensure(&req_, &report_);
    }

    void OnOK() override
    {
        Napi::Env env = Env();
        std::string path = base_;
        while (path.size() > 1 && path.back() == '/')
            path.pop_back();
        if (path != "/")
            path += '/';
        path += name_;
        Napi::Array problems = Napi::Array::New(env, report_.nproblems);
        for (int i = 0; i < report_.nproblems; i++)
            problems.Set(static_cast<uint32_t>(i), Napi::String::New(env, report_.problems[i]));
        Napi::Object out = Napi::Object::New(env);
        out.Set("path", Napi::String::New(env, path));
        out.Set("created", Napi::Boolean::New(env, report_.created != 0));
        out.Set("refused", Napi::Boolean::New(env, report_.refused != 0));
        out.Set("problems", problems);
        deferred_.Resolve(out);
    }

    void OnError(const Napi::Error &e) override
    {
        deferred_.Reject(e.Value());
    }

  private:
    Napi::Promise::Deferred deferred_;
    std::string base_, name_, upload_dir_;
    struct home_request req_ = {};
    struct home_report report_ = {};
};

bool GetString(const Napi::Object &o, const char *key, std::string *out)
{
    Napi::Value v = o.Get(key);
    if (!v.IsString())
        return false;
    *out = v.As<Napi::String>().Utf8Value();
    // An embedded NUL would make C see a different (shorter) name than the caller validated.
    return out->find('\0') == std::string::npos;
}

bool GetId(const Napi::Object &o, const char *key, uint32_t max, uint32_t *out)
{
    Napi::Value v = o.Get(key);
    if (!v.IsNumber())
        return false;
    double d = v.As<Napi::Number>().DoubleValue();
    if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d)))
        return false;
    *out = static_cast<uint32_t>(d);
    return true;
}

} // namespace

Napi::Value CreateHome(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
        Napi::TypeError::New(env, "createHome(opts): opts must be an object")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    Napi::Object o = info[0].As<Napi::Object>();
    std::string base, name, upload_dir, layout;
    uint32_t uid = 0, gid = 0, mode = 0;
    if (!GetString(o, "base", &base) || !GetString(o, "name", &name) ||
        !GetString(o, "layout", &layout) || (layout != "chroot" && layout != "plain") ||
        !GetId(o, "uid", 0xfffffffeu, &uid) || !GetId(o, "gid", 0xfffffffeu, &gid) ||
        !GetId(o, "mode", 07777, &mode)) {
        Napi::TypeError::New(
            env, "createHome(opts): need base, name (strings), layout ('chroot'|'plain'), "
                 "uid, gid (integers) and mode (0..07777)")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    if (layout == "chroot" && !GetString(o, "uploadDir", &upload_dir)) {
        Napi::TypeError::New(env, "createHome(opts): the chroot layout needs uploadDir (string)")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    auto *worker =
        new HomeWorker(env, base, name, upload_dir, uid, gid,
                       layout == "chroot" ? HOME_LAYOUT_CHROOT : HOME_LAYOUT_PLAIN, mode);
    worker->Queue();
    return worker->Promise();
}
