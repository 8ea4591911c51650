// The functions latchkey.node exports; each lives in its own file.
#ifndef LATCHKEY_ADDON_H
#define LATCHKEY_ADDON_H

#include <napi.h>

Napi::Value PeerCred(const Napi::CallbackInfo &info);
Napi::Value Crypt(const Napi::CallbackInfo &info);
Napi::Value CheckDir(const Napi::CallbackInfo &info);
Napi::Value SdNotify(const Napi::CallbackInfo &info);
Napi::Function MapWriterClass(Napi::Env env);

#endif
