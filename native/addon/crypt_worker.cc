// crypt(password, setting): libxcrypt's crypt_rn on the libuv threadpool. A yescrypt or
// sha512crypt verification takes tens of milliseconds; on the event loop it would stall every
// other NSS lookup and login, so it never runs there.
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "addon.h"

namespace
{

class CryptWorker : public Napi::AsyncWorker
{
  public:
    CryptWorker(Napi::Env env, const char *password, size_t password_len, std::string setting)
        : Napi::AsyncWorker(env, "latchkey.crypt"), deferred_(Napi::Promise::Deferred::New(env)),
          setting_(std::move(setting))
    {
        // A plain malloc'd copy rather than std::string, so no reallocation leaves an unwiped copy.
        password_ = static_cast<char *>(malloc(password_len + 1));
        if (password_ != nullptr) {
            memcpy(password_, password, password_len);
            password_[password_len] = '\0';
            password_len_ = password_len;
        }
    }

    ~CryptWorker() override
    {
        if (password_ != nullptr) {
            explicit_bzero(password_, password_len_);
            free(password_);
        }
    }

    Napi::Promise Promise()
    {
        return deferred_.Promise();
    }

  protected:
    void Execute() override
    {
        if (password_ == nullptr)
            return; // resolves null: out of memory is a failed verification
        // struct crypt_data is ~32 KiB: too big for a threadpool stack, so on the heap. crypt(5)
        // asks for it zeroed before the first use.
        auto *data = static_cast<struct crypt_data *>(calloc(1, sizeof(struct crypt_data)));
        if (data == nullptr)
            return;
        const char *out = crypt_rn(password_, setting_.c_str(), data, sizeof *data);
        // crypt(3): failure is NULL or, for some hashes, a string starting with '*' ("*0", "*1").
        if (out != nullptr && out[0] != '*') {
            result_.assign(out);
            ok_ = true;
        }
        explicit_bzero(data, sizeof *data);
        free(data);
    }

    void OnOK() override
    {
        Napi::Env env = Env();
        if (ok_)
            deferred_.Resolve(Napi::String::New(env, result_));
        else
            deferred_.Resolve(env.Null());
    }

    void OnError(const Napi::Error &e) override
    {
        deferred_.Reject(e.Value());
    }

  private:
    Napi::Promise::Deferred deferred_;
    std::string setting_;
    char *password_ = nullptr;
    size_t password_len_ = 0;
    std::string result_;
    bool ok_ = false;
};

} // namespace

Napi::Value Crypt(const Napi::CallbackInfo &info)
{
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
        Napi::TypeError::New(env, "crypt(password, setting): both must be strings")
            .ThrowAsJavaScriptException();
        return env.Undefined();
    }
    // Utf8Value copies; we copy once more into a buffer we can wipe and wipe this one now.
    std::string password = info[0].As<Napi::String>().Utf8Value();
    std::string setting = info[1].As<Napi::String>().Utf8Value();
    // crypt(3) stops at the first NUL: "a\0b" would verify as "a". Such a password never matches.
    bool has_nul =
        password.find('\0') != std::string::npos || setting.find('\0') != std::string::npos;
    CryptWorker *worker =
        has_nul ? new CryptWorker(env, "", 0, std::string("*")) // '*' is never a valid setting
                : new CryptWorker(env, password.data(), password.size(), std::move(setting));
    explicit_bzero(&password[0], password.size());
    worker->Queue();
    return worker->Promise();
}
