// /docs: Swagger UI over this server's OpenAPI document (assets from /docs/assets/, no CDN).
window.ui = window.SwaggerUIBundle({
  url: "/docs/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null, // never send the document to swagger.io's validator
});
