// The REST API's interactive documentation (/api/v1/docs): Swagger UI, vendored, reading the OpenAPI document
// whose address the page gives. "Try it out" sends requests with the browser's session; writes carry the CSRF
// token the page holds, as the pages' forms do. No validator badge: it would call a server on the internet.
(function () {
  "use strict";
  function start() {
    var root = document.getElementById("swagger-ui");
    if (!root || typeof window.SwaggerUIBundle !== "function") return;
    var csrf = root.dataset.csrfToken;
    window.SwaggerUIBundle({
      url: root.dataset.openapiUrl,
      domNode: root,
      deepLinking: true,
      validatorUrl: null,
      requestInterceptor: function (request) {
        if (csrf && request.method && request.method.toUpperCase() !== "GET") {
          request.headers["X-CSRFToken"] = csrf;
        }
        request.credentials = "same-origin";
        return request;
      },
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
