{
  "targets": [
    {
      "target_name": "latchkey",
      "sources": ["addon.cc", "peercred.cc", "notify.cc", "crypt_worker.cc", "safedir_napi.cc", "map_napi.cc", "../common/safedir.c",
                  "../common/lk_map.c", "../common/lk_map_write.c", "../common/lk_map_write_ops.c",
                  "../common/lk_records.c", "../common/lk_msgs.c", "../common/lk_wire.c"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "../common"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "cflags_cc": ["-Wall", "-Wextra", "-Werror"],
      "ldflags": ["-Wl,-z,relro,-z,now"],
      "libraries": ["-lcrypt"]
    }
  ]
}
