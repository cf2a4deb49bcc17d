// The operator panel's jog buttons, held: the page works without this script (each press
// is one step of the chosen length); with it, holding a button past a moment jogs
// continuously, one short piece at a time while it is held, and letting go sends the jog
// cancel. If this page goes silent, the head stops at the end of the last piece.
(function () {
  var form = document.getElementById('jog');
  if (!form || !window.fetch || !window.URLSearchParams) return;
  var csrf = form.querySelector('input[name="csrf_token"]').value;
  var feed = form.querySelector('input[name="feed"]');
  function send(fields) {
    fields.csrf_token = csrf;
    return fetch(form.action, {
      method: 'POST',
      credentials: 'same-origin',
      redirect: 'manual',
      body: new URLSearchParams(fields)
    });
  }
  form.querySelectorAll('button[name="move"]').forEach(function (button) {
    var move = button.value;
    var wait = null, repeat = null, held = false;
    function piece() {
      send({ action: 'jog_hold', axis: move.charAt(0), direction: move.charAt(1) === '+' ? 'plus' : 'minus', feed: feed.value });
    }
    function stop() {
      clearTimeout(wait);
      clearInterval(repeat);
      wait = repeat = null;
      button.removeAttribute('data-held');
      if (held) send({ action: 'jog_stop' });
    }
    button.addEventListener('pointerdown', function () {
      held = false;
      wait = setTimeout(function () {
        held = true;
        button.setAttribute('data-held', '');
        piece();
        repeat = setInterval(piece, 300);
      }, 250);
    });
    ['pointerup', 'pointerleave', 'pointercancel', 'blur'].forEach(function (name) {
      button.addEventListener(name, stop);
    });
    // A hold already moved the head: the click that follows is not a step as well.
    button.addEventListener('click', function (event) {
      if (held) { event.preventDefault(); held = false; }
    });
  });
  window.addEventListener('pagehide', function () {
    if (form.querySelector('button[data-held]')) send({ action: 'jog_stop' });
  });
})();
