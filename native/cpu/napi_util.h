// Small Node-API helpers shared by the addon's binding files.
#pragma once
#include <node_api.h>

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
