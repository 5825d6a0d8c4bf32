// Small Node-API helpers shared by the addon's binding files.
#pragma once
#include <node_api.h>

#include <initializer_list>

inline napi_value undefined_value(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

inline napi_value number_value(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

struct NamedFunction {
  const char* name;
  napi_callback fn;
};

/** Sets each function as a property of `exports` under its name. */
inline void export_functions(napi_env env, napi_value exports, std::initializer_list<NamedFunction> fns) {
  for (const auto& f : fns) {
    napi_value v;
    napi_create_function(env, f.name, NAPI_AUTO_LENGTH, f.fn, nullptr, &v);
    napi_set_named_property(env, exports, f.name, v);
  }
}
