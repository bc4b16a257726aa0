// Curata pages: progressive enhancement only (every page works without this file).
// Sends the session's CSRF token with fetch() calls made by the pages.
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  window.curataFetch = function (url, options) {
    options = options || {};
    options.headers = Object.assign({"X-CSRF-Token": meta ? meta.content : ""}, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options);
  };
})();
