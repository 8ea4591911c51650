// latchkey.node: what Node cannot do itself (DESIGN.md, "Parts and names").
#include "addon.h"

static Napi::Object Init(Napi::Env env, Napi::Object exports)
{
    exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
    exports.Set("crypt", Napi::Function::New(env, Crypt, "crypt"));
    exports.Set("checkDir", Napi::Function::New(env, CheckDir, "checkDir"));
    exports.Set("MapWriter", MapWriterClass(env));
    exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
    return exports;
}

NODE_API_MODULE(NODE_GYP_MODULE_NAME, Init)
