;;; tak: the Takeuchi function, the classic benchmark of procedure calls.
;;; Every call allocates an environment frame, so this is also a test of
;;; short-lived garbage.

(define (tak x y z)
  (if (not (< y x))
      z
      (tak (tak (- x 1) y z)
           (tak (- y 1) z x)
           (tak (- z 1) x y))))

(define (repeat n thunk)
  (let loop ((i 1) (result (thunk)))
    (if (< i n)
        (loop (+ i 1) (thunk))
        result)))

(display "(tak 18 12 6) = ")
(display (repeat 20 (lambda () (tak 18 12 6))))
(newline)
