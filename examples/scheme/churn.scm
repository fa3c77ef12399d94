;;; churn: a long-running loop that allocates lists, vectors and strings,
;;; keeps a rotating window of them alive, and prints a checksum.

(define (iota n)
  (let loop ((i (- n 1)) (acc '()))
    (if (< i 0) acc (loop (- i 1) (cons i acc)))))

(define (vector-sum v)
  (do ((i 0 (+ i 1))
       (s 0 (+ s (vector-ref v i))))
      ((= i (vector-length v)) s)))

(define (repeat-string s n)
  (let loop ((i 0) (acc ""))
    (if (= i n) acc (loop (+ i 1) (string-append acc s)))))

;; The live window: a vector of recent results, overwritten in turn.
(define window (make-vector 64 '()))

(define (one-round k)
  (let* ((l (iota 150))
         (v (list->vector (map (lambda (x) (* x (+ k 1000))) l)))
         (s (repeat-string (number->string (vector-ref v 7)) 8))
         (both (append l (reverse l))))
    (vector-set! window (modulo k (vector-length window)) (cons s v))
    (+ (vector-sum v) (string-length s) (length both))))

(define (window-sum)
  (let loop ((i 0) (acc 0))
    (if (= i (vector-length window))
        acc
        (let ((entry (vector-ref window i)))
          (loop (+ i 1)
                (if (pair? entry)
                    (+ acc (string-length (car entry)) (vector-ref (cdr entry) 1))
                    acc))))))

(define (run rounds)
  (let loop ((k 0) (acc 0))
    (if (= k rounds)
        acc
        (loop (+ k 1) (modulo (+ (* acc 7) (one-round k)) 1000000007)))))

(display "checksum: ")
(display (run 2000))
(newline)
(display "window: ")
(display (window-sum))
(newline)
(display "last: ")
(write (car (vector-ref window 0)))
(display " ")
(display (vector 1 "two" #\3 'four (cons 5 6) '(7 . (8 9)) #t #f '()))
(newline)
