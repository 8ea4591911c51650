// MapWriter: the daemon's handle on the shared-memory map (<socket_dir>/nss.map), a thin wrapper
// of ../common/lk_map_write.c. Synchronous: each call is a few stores into shared memory (a
// rebuild into a new file, when the map is full or the group changes, copies what is live).
// Errors throw an Error naming the file and the cause; the daemon then stops publishing and the
// NSS module asks the socket as before.
#include <errno.h>

#include <string>

#include "addon.h"
extern "C" {
#include "lk_map_write.h"
}

namespace
{

class MapWriter : public Napi::ObjectWrap<MapWriter>
{
  public:
    static Napi::Function Define(Napi::Env env)
    {
        return DefineClass(env, "MapWriter",
                           {
                               InstanceMethod("putUser", &MapWriter::PutUser),
                               InstanceMethod("putNegName", &MapWriter::PutNegName),
                               InstanceMethod("putNegUid", &MapWriter::PutNegUid),
                               InstanceMethod("removeName", &MapWriter::RemoveName),
                               InstanceMethod("removeUid", &MapWriter::RemoveUid),
                               InstanceMethod("reset", &MapWriter::Reset),
                               InstanceMethod("setGroup", &MapWriter::SetGroup),
                               InstanceMethod("touchGroup", &MapWriter::TouchGroup),
                               InstanceMethod("stats", &MapWriter::Stats),
                               InstanceMethod("close", &MapWriter::Close),
                           });
    }

    // new MapWriter(path, expectUsers)
    explicit MapWriter(const Napi::CallbackInfo &info) : Napi::ObjectWrap<MapWriter>(info)
    {
        Napi::Env env = info.Env();
        std::string path;
        if (info.Length() < 2 || !Str(info[0], &path) || !info[1].IsNumber()) {
            Napi::TypeError::New(env, "new MapWriter(path, expectUsers)")
                .ThrowAsJavaScriptException();
            return;
        }
        uint32_t expect = info[1].As<Napi::Number>().Uint32Value();
        int rc = lkw_open(&w_, path.c_str(), expect);
        if (rc != 0) {
            std::string msg = w_ ? lkw_error(w_) : std::string("out of memory");
            lkw_close(w_, 0);
            w_ = nullptr;
            Throw(env, rc, msg);
        }
    }

    ~MapWriter() override
    {
        // Dropped without close(): keep the file (a new daemon retires it), free the memory.
        lkw_close(w_, 0);
    }

  private:
    lk_map_writer *w_ = nullptr;

    static bool Str(const Napi::Value &v, std::string *out)
    {
        if (!v.IsString())
            return false;
        *out = v.As<Napi::String>().Utf8Value();
        return out->find('\0') == std::string::npos; // C would see a shorter string
    }

    static bool Num(const Napi::Value &v, double lo, double hi, double *out)
    {
        if (!v.IsNumber())
            return false;
        *out = v.As<Napi::Number>().DoubleValue();
        return *out >= lo && *out <= hi && *out == static_cast<double>(static_cast<int64_t>(*out));
    }

    static void Throw(Napi::Env env, int rc, const std::string &msg)
    {
        Napi::Error err = Napi::Error::New(env, msg);
        err.Set("errno", Napi::Number::New(env, -rc));
        err.ThrowAsJavaScriptException();
    }

    bool Open(Napi::Env env)
    {
        if (w_ == nullptr) {
            Napi::Error::New(env, "the map writer is closed").ThrowAsJavaScriptException();
            return false;
        }
        return true;
    }

    Napi::Value Result(Napi::Env env, int rc)
    {
        if (rc < 0) {
            Throw(env, rc, lkw_error(w_));
            return env.Undefined();
        }
        return Napi::Number::New(env, rc); // 0 published, 1 not published
    }

    Napi::Value Bad(Napi::Env env, const char *usage)
    {
        Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
        return env.Undefined();
    }

    // putUser(name, uid, gid, gecos, dir, shell, expiresMs)
    Napi::Value PutUser(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        std::string name, gecos, dir, shell;
        double uid, gid, exp;
        if (info.Length() < 7 || !Str(info[0], &name) || !Num(info[1], 1, 4294967295.0, &uid) ||
            !Num(info[2], 1, 4294967295.0, &gid) || !Str(info[3], &gecos) || !Str(info[4], &dir) ||
            !Str(info[5], &shell) || !Num(info[6], 0, 9007199254740991.0, &exp))
            return Bad(env, "putUser(name, uid, gid, gecos, dir, shell, expiresMs)");
        if (!Open(env))
            return env.Undefined();
        lkw_user u = { name.c_str(),
                       gecos.c_str(),
                       dir.c_str(),
                       shell.c_str(),
                       static_cast<uint32_t>(uid),
                       static_cast<uint32_t>(gid),
                       static_cast<uint64_t>(exp) };
        return Result(env, lkw_put_user(w_, &u));
    }

    Napi::Value PutNegName(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        std::string name;
        double exp;
        if (info.Length() < 2 || !Str(info[0], &name) || !Num(info[1], 0, 9007199254740991.0, &exp))
            return Bad(env, "putNegName(name, expiresMs)");
        if (!Open(env))
            return env.Undefined();
        return Result(env, lkw_put_neg_name(w_, name.c_str(), static_cast<uint64_t>(exp)));
    }

    Napi::Value PutNegUid(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        double uid, exp;
        if (info.Length() < 2 || !Num(info[0], 1, 4294967295.0, &uid) ||
            !Num(info[1], 0, 9007199254740991.0, &exp))
            return Bad(env, "putNegUid(uid, expiresMs)");
        if (!Open(env))
            return env.Undefined();
        return Result(env,
                      lkw_put_neg_uid(w_, static_cast<uint32_t>(uid), static_cast<uint64_t>(exp)));
    }

    Napi::Value RemoveName(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        std::string name;
        if (info.Length() < 1 || !Str(info[0], &name))
            return Bad(env, "removeName(name)");
        if (!Open(env))
            return env.Undefined();
        // removeName(name, true): the negative entry goes too (a stored local user was added)
        if (info.Length() >= 2 && info[1].ToBoolean().Value())
            lkw_remove_neg_name(w_, name.c_str());
        return Result(env, lkw_remove_name(w_, name.c_str()));
    }

    Napi::Value RemoveUid(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        double uid;
        if (info.Length() < 1 || !Num(info[0], 0, 4294967295.0, &uid))
            return Bad(env, "removeUid(uid)");
        if (!Open(env))
            return env.Undefined();
        if (info.Length() >= 2 && info[1].ToBoolean().Value())
            lkw_remove_neg_uid(w_, static_cast<uint32_t>(uid));
        return Result(env, lkw_remove_uid(w_, static_cast<uint32_t>(uid)));
    }

    // reset(keepUsers, keepNegatives): a new file with only what is kept
    Napi::Value Reset(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        if (info.Length() < 2 || !info[0].IsBoolean() || !info[1].IsBoolean())
            return Bad(env, "reset(keepUsers, keepNegatives)");
        if (!Open(env))
            return env.Undefined();
        return Result(env, lkw_reset(w_, info[0].As<Napi::Boolean>().Value(),
                                     info[1].As<Napi::Boolean>().Value()));
    }

    // setGroup(name | null, gid, expiresMs)
    Napi::Value SetGroup(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        std::string name;
        double gid, exp;
        bool none = info.Length() >= 1 && info[0].IsNull();
        if (info.Length() < 3 || (!none && !Str(info[0], &name)) ||
            !Num(info[1], 0, 4294967295.0, &gid) || !Num(info[2], 0, 9007199254740991.0, &exp))
            return Bad(env, "setGroup(name | null, gid, expiresMs)");
        if (!Open(env))
            return env.Undefined();
        return Result(env, lkw_set_group(w_, none ? nullptr : name.c_str(),
                                         static_cast<uint32_t>(gid), static_cast<uint64_t>(exp)));
    }

    Napi::Value TouchGroup(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        double exp;
        if (info.Length() < 1 || !Num(info[0], 0, 9007199254740991.0, &exp))
            return Bad(env, "touchGroup(expiresMs)");
        if (!Open(env))
            return env.Undefined();
        lkw_touch_group(w_, static_cast<uint64_t>(exp));
        return env.Undefined();
    }

    Napi::Value Stats(const Napi::CallbackInfo &info)
    {
        Napi::Env env = info.Env();
        if (!Open(env))
            return env.Undefined();
        lkw_stats s;
        lkw_get_stats(w_, &s);
        Napi::Object o = Napi::Object::New(env);
        o.Set("generation", Napi::Number::New(env, static_cast<double>(s.generation)));
        o.Set("fileSize", Napi::Number::New(env, static_cast<double>(s.file_size)));
        o.Set("slots", Napi::Number::New(env, s.slots));
        o.Set("users", Napi::Number::New(env, s.users));
        o.Set("negNames", Napi::Number::New(env, s.neg_names));
        o.Set("negUids", Napi::Number::New(env, s.neg_uids));
        o.Set("dataUsed", Napi::Number::New(env, static_cast<double>(s.data_used)));
        o.Set("dataSize", Napi::Number::New(env, static_cast<double>(s.data_size)));
        o.Set("rebuilds", Napi::Number::New(env, static_cast<double>(s.rebuilds)));
        o.Set("notPublished", Napi::Number::New(env, static_cast<double>(s.not_published)));
        return o;
    }

    // close(unlinkFile): retire the file (and remove it on a clean stop)
    Napi::Value Close(const Napi::CallbackInfo &info)
    {
        bool unlink_file = info.Length() >= 1 && info[0].ToBoolean().Value();
        lkw_close(w_, unlink_file ? 1 : 0);
        w_ = nullptr;
        return info.Env().Undefined();
    }
};

} // namespace

Napi::Function MapWriterClass(Napi::Env env)
{
    return MapWriter::Define(env);
}
